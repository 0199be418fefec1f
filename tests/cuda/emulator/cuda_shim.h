// Host emulation of the CUDA features ember's generated kernels use, for testing them without a GPU.
//
// Every CUDA thread of a block is a std::thread; blocks run one after another (so a function-local
// `__shared__` variable, made `static` here, is the block's shared memory).  __syncthreads is a
// barrier over the block, __shfl_xor_sync an exchange through per-warp slots between two barriers.
// This checks the generated code's arithmetic, indexing, reductions and control flow; it says
// nothing about speed, and the math library is the host's (accuracy differs by a few ulps).
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
#include <math.h>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__ __restrict
#define __shared__ static

struct ember_dim3 { unsigned x = 0, y = 0, z = 0; };
inline thread_local ember_dim3 threadIdx, blockIdx;
inline ember_dim3 blockDim, gridDim;

struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
// correctly rounded arithmetic that is never contracted into an FMA (the build passes -ffp-contract=off)
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }

inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long val) {
  return __sync_val_compare_and_swap(p, cmp, val);
}

struct ember_warp {
  std::barrier<> bar;
  unsigned long long slots[32];
  explicit ember_warp(int n) : bar(n) {}
};
inline thread_local ember_warp* ember_tl_warp = nullptr;
inline thread_local std::barrier<>* ember_tl_block = nullptr;

template <typename T> T __shfl_xor_sync(unsigned, T v, int s) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = threadIdx.x & 31;
  ember_tl_warp->slots[lane] = bits;
  ember_tl_warp->bar.arrive_and_wait();
  unsigned long long o = ember_tl_warp->slots[lane ^ s];
  ember_tl_warp->bar.arrive_and_wait();
  T r;
  std::memcpy(&r, &o, sizeof(T));
  return r;
}

inline void __syncthreads() { ember_tl_block->arrive_and_wait(); }

// run fn as a grid of `grid` blocks of `block` threads
inline void ember_emulate(int grid, int block, const std::function<void()>& fn) {
  gridDim.x = grid;
  blockDim.x = block;
  for (int b = 0; b < grid; ++b) {
    std::barrier<> block_bar(block);
    std::vector<std::unique_ptr<ember_warp>> warps;
    for (int w = 0; w * 32 < block; ++w) warps.emplace_back(new ember_warp(std::min(32, block - w * 32)));
    std::vector<std::thread> threads;
    for (int t = 0; t < block; ++t) {
      threads.emplace_back([&, t, b]() {
        threadIdx.x = t;
        blockIdx.x = b;
        ember_tl_warp = warps[t / 32].get();
        ember_tl_block = &block_bar;
        fn();
      });
    }
    for (auto& th : threads) th.join();
  }
}
