from nsh.data.augment import DeviceAugment, TwoViews, eval_load, eval_view, normalize_batch, train_load, train_view
from nsh.data.datasets import CachedViews, ItemDataset, collate_skip_bad, report_bad
from nsh.data.sources import BadItemError, Corpus, DatasetNotFoundError, build_corpus, load_image
from nsh.data.splits import SPLITS, load_or_make_split, make_split

__all__ = ["DeviceAugment", "TwoViews", "eval_load", "eval_view", "normalize_batch", "train_load", "train_view",
           "CachedViews", "ItemDataset", "collate_skip_bad", "report_bad", "BadItemError", "Corpus",
           "DatasetNotFoundError", "build_corpus", "load_image", "SPLITS", "load_or_make_split", "make_split"]
