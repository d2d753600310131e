"""The original tool's classifier file: a `.pth` made exactly as the original training script made
it, for the tests that read that format (the classifier's and `download-models`')."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ORIGINAL_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MLPClassifier(nn.Module):
        def __init__(self, input_dim, hidden_dim, num_class):
            super(MLPClassifier, self).__init__()
            self.hidden_layer = nn.Linear(input_dim, hidden_dim)
            self.bn1 = nn.BatchNorm1d(hidden_dim)
            self.output_layer = nn.Linear(hidden_dim, num_class)
            self.dropout = nn.Dropout(0.5)
            self.init_weights()

        def init_weights(self):
            nn.init.xavier_uniform_(self.hidden_layer.weight)
            nn.init.xavier_uniform_(self.output_layer.weight)

        def forward(self, x):
            x = self.hidden_layer(x)
            x = self.bn1(x)
            x = F.relu(x)
            x = self.dropout(x)
            x = self.output_layer(x)
            return x

    out, input_dim = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(1)
    model = MLPClassifier(input_dim, 512, 2)
    # A few training steps so the BatchNorm running statistics are not the defaults.
    model.train()
    for _ in range(3):
        model(torch.randn(64, input_dim) * 2 + 0.5)
    model.eval()
    features = torch.randn(16, input_dim)
    with torch.no_grad():
        probabilities = F.softmax(model(features), dim=1)
    torch.save(model, out)
    np.save(out + ".features.npy", features.numpy())
    np.save(out + ".probabilities.npy", probabilities.numpy())
    """
)


def make_original_pth(folder: Path, input_dim: int = 3328) -> Path:
    """A `.pth` made exactly as the original made it, in a subprocess whose `__main__` has the class."""
    script = folder / "train_original.py"
    script.write_text(ORIGINAL_SCRIPT, encoding="utf-8")
    out = folder / "500_model.pth"
    subprocess.run([sys.executable, str(script), str(out), str(input_dim)], check=True)
    return out
