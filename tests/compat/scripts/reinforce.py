"""PyTorch's REINFORCE example (pytorch/examples, reinforcement_learning/reinforce.py) on CartPole.

Written as the example writes it (Categorical policy, saved log-probs, discounted normalised returns
built in a deque, torch.cat of the per-step losses); only the imports name ember. gym is replaced by
the CartPole-v1 dynamics in numpy. `init` and `actions` replay a run under real PyTorch (the same
weights and the same sampled actions), `dropout` can be switched off for that comparison.
"""
import math
from collections import deque

import numpy as np

import ember as torch
import ember.nn as nn
import ember.nn.functional as F
import ember.optim as optim
from ember.distributions import Categorical


class CartPole:
    """gym's CartPole-v1: push left/right, reward 1 per step, done when the pole falls or after 500 steps."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.s, self.t = self.rng.uniform(-0.05, 0.05, 4), 0
        return self.s.copy()

    def step(self, a):
        x, xd, th, thd = self.s
        force = 10.0 if a == 1 else -10.0
        ct, st = math.cos(th), math.sin(th)
        temp = (force + 0.05 * thd ** 2 * st) / 1.1
        thacc = (9.8 * st - ct * temp) / (0.5 * (4.0 / 3.0 - 0.1 * ct ** 2 / 1.1))
        xacc = temp - 0.05 * thacc * ct / 1.1
        self.s = np.array([x + 0.02 * xd, xd + 0.02 * xacc, th + 0.02 * thd, thd + 0.02 * thacc])
        self.t += 1
        done = abs(self.s[0]) > 2.4 or abs(self.s[2]) > 12 * 2 * math.pi / 360 or self.t >= 500
        return self.s.copy(), 1.0, done


class Policy(nn.Module):
    def __init__(self, dropout=0.6):
        super(Policy, self).__init__()
        self.affine1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(p=dropout)
        self.affine2 = nn.Linear(128, 2)

        self.saved_log_probs = []
        self.rewards = []

    def forward(self, x):
        x = self.affine1(x)
        x = self.dropout(x)
        x = F.relu(x)
        action_scores = self.affine2(x)
        return F.softmax(action_scores, dim=1)


def main(episodes=30, gamma=0.99, seed=543, init=None, actions=None, dropout=0.6):
    torch.manual_seed(seed)
    policy = Policy(dropout)
    if init is not None:
        policy.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in policy.state_dict().items()}
    optimizer = optim.Adam(policy.parameters(), lr=1e-2)
    eps = np.finfo(np.float32).eps.item()
    replay = iter(actions) if actions is not None else None
    taken, losses, rewards = [], [], []

    def select_action(state):
        state = torch.from_numpy(state).float().unsqueeze(0)
        probs = policy(state)
        m = Categorical(probs)
        action = m.sample() if replay is None else torch.tensor([next(replay)])
        policy.saved_log_probs.append(m.log_prob(action))
        return action.item()

    def finish_episode():
        R = 0
        policy_loss = []
        returns = deque()
        for r in policy.rewards[::-1]:
            R = r + gamma * R
            returns.appendleft(R)
        returns = torch.tensor(returns)
        returns = (returns - returns.mean()) / (returns.std() + eps)
        for log_prob, R in zip(policy.saved_log_probs, returns):
            policy_loss.append(-log_prob * R)
        optimizer.zero_grad()
        policy_loss = torch.cat(policy_loss).sum()
        policy_loss.backward()
        optimizer.step()
        del policy.rewards[:]
        del policy.saved_log_probs[:]
        return policy_loss.item()

    env = CartPole(seed)
    for _ in range(episodes):
        state, ep_reward = env.reset(), 0
        for t in range(1, 500):
            action = select_action(state)
            taken.append(action)
            state, reward, done = env.step(action)
            policy.rewards.append(reward)
            ep_reward += reward
            if done:
                break
        rewards.append(ep_reward)
        losses.append(finish_episode())
    return {"rewards": rewards, "losses": losses, "actions": taken, "init": init_state}
