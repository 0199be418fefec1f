// ---- ember CUDA prelude: no headers needed (NVRTC or nvcc) ----
#define EMBER_INFF __int_as_float(0x7f800000)
#define EMBER_NANF __int_as_float(0x7fc00000)
#define EMBER_INF __longlong_as_double(0x7ff0000000000000LL)
#define EMBER_NAN __longlong_as_double(0x7ff8000000000000LL)
#define EMBER_FULL_MASK 0xffffffffu

// float16 as 16-bit patterns: PTX conversions, round-to-nearest-even
// [f16 conversions]
__device__ __forceinline__ float ember_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short ember_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ unsigned short ember_d2h(double d) {
  unsigned short h; asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(d)); return h;
}
// [end f16 conversions]
// round a float to the nearest float16 value (numpy computes float16 ops in float, rounds each result)
__device__ __forceinline__ float ember_rh(float f) { return ember_h2f(ember_f2h(f)); }
// bfloat16 as 16-bit patterns (the high half of a float32): round to nearest even, NaN -> 0x7fc0,
// computed in float and rounded after every operation like float16 (bit operations: no cuda_bf16.h)
__device__ __forceinline__ float ember_bf2f(unsigned short h) {
  union { unsigned int u; float f; } v; v.u = ((unsigned int)h) << 16; return v.f;
}
__device__ __forceinline__ unsigned short ember_f2bf(float f) {
  union { float f; unsigned int u; } v; v.f = f;
  if (f != f) return (unsigned short)0x7fc0;
  return (unsigned short)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float ember_rbf(float f) { return ember_bf2f(ember_f2bf(f)); }

// NaN-propagating maximum/minimum (fmaxf/fminf return the other operand for NaN)
__device__ __forceinline__ float ember_fmax(float a, float b) { return (a != a || b != b) ? a + b : fmaxf(a, b); }
__device__ __forceinline__ float ember_fmin(float a, float b) { return (a != a || b != b) ? a + b : fminf(a, b); }
__device__ __forceinline__ double ember_fmax(double a, double b) { return (a != a || b != b) ? a + b : fmax(a, b); }
__device__ __forceinline__ double ember_fmin(double a, double b) { return (a != a || b != b) ? a + b : fmin(a, b); }
template <typename T> __device__ __forceinline__ T ember_max(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T ember_min(T a, T b) { return a < b ? a : b; }
__device__ __forceinline__ float ember_max(float a, float b) { return ember_fmax(a, b); }
__device__ __forceinline__ float ember_min(float a, float b) { return ember_fmin(a, b); }
__device__ __forceinline__ double ember_max(double a, double b) { return ember_fmax(a, b); }
__device__ __forceinline__ double ember_min(double a, double b) { return ember_fmin(a, b); }

// wrapping integer arithmetic through the unsigned type (signed overflow is UB in C++)
template <typename T> struct ember_u {};
template <> struct ember_u<unsigned char> { typedef unsigned char t; };
template <> struct ember_u<signed char> { typedef unsigned char t; };
template <> struct ember_u<short> { typedef unsigned short t; };
template <> struct ember_u<int> { typedef unsigned int t; };
template <> struct ember_u<long long> { typedef unsigned long long t; };
template <typename T> __device__ __forceinline__ T ember_add(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a + (U)b);
}
template <typename T> __device__ __forceinline__ T ember_sub(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a - (U)b);
}
template <typename T> __device__ __forceinline__ T ember_mul(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a * (U)b);
}
template <typename T> __device__ __forceinline__ T ember_neg(T a) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)0 - (U)a);
}
// numpy integer floor division / modulo: x // 0 == x % 0 == 0; INT_MIN // -1 wraps
template <typename T> __device__ __forceinline__ T ember_ifloordiv(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)-1 < (T)0 && b == (T)-1) return ember_neg(a);
  T q = (T)(a / b), r = (T)(a % b);
  if (r != (T)0 && ((r < (T)0) != (b < (T)0))) q = (T)(q - 1);
  return q;
}
template <typename T> __device__ __forceinline__ T ember_ifloormod(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)-1 < (T)0 && b == (T)-1) return (T)0;
  T r = (T)(a % b);
  if (r != (T)0 && ((r < (T)0) != (b < (T)0))) r = (T)(r + b);
  return r;
}
// integer power by squaring; a negative exponent gives 1 // a**|b| (0 unless |a| == 1)
template <typename T> __device__ __forceinline__ T ember_ipow(T a, T b) {
  if ((T)-1 < (T)0 && b < (T)0) return a == (T)1 ? (T)1 : (a == (T)-1 ? ((b & 1) ? (T)-1 : (T)1) : (T)0);
  T r = (T)1, base = a;
  while (b != (T)0) { if (b & 1) r = ember_mul(r, base); base = ember_mul(base, base); b = (T)(b >> 1); }
  return r;
}
// Python/numpy float remainder and floor division (npy_remainder / npy_floor_divide)
__device__ __forceinline__ float ember_remainder(float a, float b) {
  float m = fmodf(a, b);
  if (b == 0.0f) return m;
  if (m != 0.0f) { if ((b < 0.0f) != (m < 0.0f)) m += b; } else { m = copysignf(0.0f, b); }
  return m;
}
__device__ __forceinline__ double ember_remainder(double a, double b) {
  double m = fmod(a, b);
  if (b == 0.0) return m;
  if (m != 0.0) { if ((b < 0.0) != (m < 0.0)) m += b; } else { m = copysign(0.0, b); }
  return m;
}
__device__ __forceinline__ float ember_floor_divide(float a, float b) {
  if (b == 0.0f) return a / b;
  float m = fmodf(a, b), d = (a - m) / b;
  if (m != 0.0f && ((b < 0.0f) != (m < 0.0f))) d -= 1.0f;
  if (d == 0.0f) return copysignf(0.0f, a / b);
  float f = floorf(d);
  return (d - f > 0.5f) ? f + 1.0f : f;
}
__device__ __forceinline__ double ember_floor_divide(double a, double b) {
  if (b == 0.0) return a / b;
  double m = fmod(a, b), d = (a - m) / b;
  if (m != 0.0 && ((b < 0.0) != (m < 0.0))) d -= 1.0;
  if (d == 0.0) return copysign(0.0, a / b);
  double f = floor(d);
  return (d - f > 0.5) ? f + 1.0 : f;
}
// argmax/argmin: does (v, i) beat (bv, bi)?  NaN is the extreme value; ties go to the lower index.
template <typename T> __device__ __forceinline__ bool ember_argmax_better(T v, long long i, T bv, long long bi) {
  bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}
template <typename T> __device__ __forceinline__ bool ember_argmin_better(T v, long long i, T bv, long long bi) {
  bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  return v < bv || (v == bv && i < bi);
}
// floor division / modulo of index arithmetic by a positive constant (operands may be negative)
template <typename T> __device__ __forceinline__ T ember_idx_div(T a, T c) { T q = a / c; return (a % c < 0) ? q - 1 : q; }
template <typename T> __device__ __forceinline__ T ember_idx_mod(T a, T c) { T r = a % c; return r < 0 ? r + c : r; }
// a gather index out of range: remember the first one (the runtime raises IndexError)
__device__ __forceinline__ void ember_index_error(long long* err, long long value, long long dim, long long size) {
  if (atomicCAS((unsigned long long*)err, 0ULL, 1ULL) == 0ULL) { err[1] = value; err[2] = dim; err[3] = size; }
}
// ---- end of prelude ----
