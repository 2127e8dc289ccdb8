"""The models from the blog posts modelviz grew from (see ../shared/seeds)."""

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """The FashionMNIST classifier of the TensorBoard tutorial: input 1x28x28."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        logits: torch.Tensor = self.fc3(x)
        return logits


class SmallConvNet(nn.Module):
    """The transfer-learning post's conv net with BatchNorm and Dropout: input 3x224x224.

    torchsummary printed for it: Total params 601,809; Forward/backward pass size 5.53 MB.
    """

    def __init__(self, num_classes: int = 1) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2), nn.BatchNorm2d(cout),
                                 nn.ReLU(), nn.MaxPool2d(2))

        self.layer1 = block(3, 16)
        self.layer2 = block(16, 32)
        self.layer3 = block(32, 64)
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(576, 1000)
        self.fc2 = nn.Linear(1000, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.dropout(torch.flatten(x, 1))
        logits: torch.Tensor = self.fc2(self.fc1(x))
        return logits


def tanh_mlp() -> nn.Sequential:
    """The torchviz post's ``Sequential`` of Linear(8, 16) and Tanh: input 8."""
    model = nn.Sequential()
    model.add_module("W0", nn.Linear(8, 16))
    model.add_module("tanh", nn.Tanh())
    return model


class ActivationNet(nn.Module):
    """The activation-map post's MNIST model: input 1x28x28."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        logits: torch.Tensor = self.fc2(x)
        return logits
