"""Model objects the tests import by dotted path."""

from sample_models.seeds import Net

INSTANCE = Net()
