"""The default `dltrain fit` written by hand, for bench/overhead.py to time as a whole process
(imports included): scikit-learn's digits, the same stratified 80/20 split rows (seed 0),
features standardized on the training rows, the MLP 64-128-64-10 with ReLU and dropout 0.1,
Adam lr 1e-3, batch 64, shuffled, 20 epochs, validation loss and accuracy after each epoch;
torch's default threads, no logging, no checkpoints.

    python bench/hand_fit_digits.py
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

torch.manual_seed(0)
digits = load_digits()
x, y = digits.data.astype(np.float32), digits.target
index = np.arange(len(y))
val_count = int(round(len(y) * 0.2))
train_rows, val_rows = train_test_split(index, test_size=val_count, random_state=0, shuffle=True, stratify=y)
train_rows, val_rows = np.sort(train_rows), np.sort(val_rows)
mean, std = x[train_rows].mean(0), x[train_rows].std(0)
std[std == 0] = 1.0
x = (x - mean) / std
x_train, y_train = torch.from_numpy(x[train_rows]), torch.from_numpy(y[train_rows]).long()
x_val, y_val = torch.from_numpy(x[val_rows]), torch.from_numpy(y[val_rows]).long()

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64), nn.ReLU(),
                      nn.Dropout(0.1), nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(20):
    model.train()
    order = torch.randperm(len(x_train))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        optimizer.zero_grad()
        loss_fn(model(x_train[batch]), y_train[batch]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(x_val)
        val_loss = loss_fn(outputs, y_val).item()
        val_accuracy = (outputs.argmax(1) == y_val).float().mean().item()
    print(f"epoch {epoch + 1}: val loss {val_loss:.4f}, val accuracy {val_accuracy:.4f}")
