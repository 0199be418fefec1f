"""PyTorch's time_sequence_prediction example (pytorch/examples): two stacked LSTMCells learn sine
waves in float64, trained with LBFGS, then predict into the future. At toy size.

Written as the example writes it; only the imports name ember. generate_sine_wave's data, the
Sequence model stepping LSTMCells over input.split(1, dim=1) and feeding its own output back for the
future steps, model.double(), MSELoss, optim.LBFGS(lr=0.8) with a closure, and a no_grad prediction.
`init` (arrays) replays the same run under real PyTorch; `compiled` runs the model through
torch.compile (the closure then calls compiled code for every line-search evaluation).
"""
import numpy as np

import ember as torch
import ember.nn as nn
import ember.optim as optim


def generate_sine_wave(T=20, L=1000, N=100, seed=2):
    np.random.seed(seed)
    x = np.empty((N, L), "int64")
    x[:] = np.array(range(L)) + np.random.randint(-4 * T, 4 * T, N).reshape(N, 1)
    return np.sin(x / 1.0 / T).astype("float64")


class Sequence(nn.Module):
    def __init__(self, hidden=51):
        super(Sequence, self).__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for i in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        outputs = torch.cat(outputs, dim=1)
        return outputs


def main(steps=3, N=10, L=24, hidden=12, future=8, max_iter=8, init=None, compiled=False, seed=0):
    np.random.seed(seed)
    torch.manual_seed(seed)
    data = generate_sine_wave(L=L, N=N)
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    seq = Sequence(hidden)
    seq.double()
    if init is not None:
        seq.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in seq.state_dict().items()}
    net = torch.compile(seq) if compiled else seq
    criterion = nn.MSELoss()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8, max_iter=max_iter)

    losses, test_losses, evals = [], [], 0
    for i in range(steps):
        def closure():
            nonlocal evals
            evals += 1
            optimizer.zero_grad()
            out = net(input)
            loss = criterion(out, target)
            loss.backward()
            return loss
        losses.append(optimizer.step(closure).item())
        # begin to predict, no need to track gradient here
        with torch.no_grad():
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            test_losses.append(loss.item())
    return dict(losses=losses, test_losses=test_losses, evals=evals, init=init_state, pred=pred.numpy(), net=net)


if __name__ == "__main__":
    r = main()
    print(f"loss {r['losses'][0]:.5f} -> {r['losses'][-1]:.5f}; test {r['test_losses'][-1]:.5f}; "
          f"{r['evals']} closure calls")
