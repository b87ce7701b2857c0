"""``kiln.data``: datasets, splits, the ``DataLoader`` and augmentation transforms.

Example:
    >>> import kiln
    >>> from kiln.data import DataLoader, digits, train_val_test_split
    >>> train, val, test = train_val_test_split(digits(), stratify=True, generator=0)
    >>> len(train), len(val), len(test)
    (1258, 270, 269)
    >>> x, y = next(iter(DataLoader(train, batch_size=32, shuffle=True, generator=0)))
    >>> x.shape, y.dtype
    (kiln.Size([32, 1, 8, 8]), kiln.int64)
"""

from kiln.data import transforms
from kiln.data.dataset import (
    ArrayDataset,
    ConcatDataset,
    Dataset,
    Subset,
    TensorDataset,
    random_split,
    train_val_test_split,
)
from kiln.data.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    CharDataset,
    digits,
    fashion_mnist,
    mnist,
    mnist1d,
    read_idx,
    text,
)
from kiln.data.loader import DataLoader, default_collate

# distributed sampler
from kiln.data.sampler import DistributedSampler  # noqa: E402

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "ConcatDataset", "DataLoader",
           "default_collate", "random_split", "train_val_test_split", "transforms", "digits",
           "fashion_mnist", "mnist", "read_idx", "mnist1d", "text", "CharDataset",
           "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "DistributedSampler"]
