"""``load_dataset(spec)``: the one parser of dataset spec strings (``scheme:PATH`` or ``digits``)."""

from __future__ import annotations

import dataclasses

from simxir.data.cifar import load_cifar
from simxir.data.dataset import ImageDataset, Split, resize_images
from simxir.data.digits import load_digits_dataset
from simxir.data.folder import load_folder
from simxir.data.index import folder_index
from simxir.data.npz import load_npz
from simxir.data.stream import (
    LoaderConfig,
    StreamedDataset,
    check_loader,
    sample_indices,
    should_stream,
    streamed_folder,
)
from simxir.data.svhn import load_svhn
from simxir.errors import UserError
from simxir.progress import log
from simxir.sizes import eval_resize

SCHEMES: dict[str, str] = {
    "cifar10": "cifar10:DIR (cifar-10-batches-py folder, its parent, or cifar-10-python.tar.gz)",
    "cifar100": "cifar100:DIR (cifar-100-python folder, its parent, or cifar-100-python.tar.gz)",
    "svhn": "svhn:DIR (folder with train_32x32.mat and test_32x32.mat)",
    "folder": "folder:DIR (labelled when DIR/train/<class>/ and DIR/val/<class>/ (or test/) are there, "
              "else every image under DIR, unlabelled)",
    "imagefolder": "imagefolder:DIR (folder: forced labelled: DIR/train/<class>/*.png|jpg|jpeg|webp and "
                   "DIR/val/<class>/ or DIR/test/<class>/)",
    "images": "images:DIR (folder: forced unlabelled: every .png/.jpg/.jpeg/.webp under DIR, any depth)",
    "files": "files:LIST (unlabelled: a text file naming one image per line, relative to the list's folder)",
    "npz": "npz:FILE (x_train uint8 NHWC, y_train, x_test, y_test, optional classes)",
    "digits": "digits (scikit-learn's bundled 8x8 digits, upsampled to 16x16; no file)",
}


# the schemes read through a file index (labelled or not: simxir.data.index.folder_index's ``labels``)
FOLDER_SCHEMES: dict[str, str] = {"folder": "auto", "imagefolder": "on", "images": "off", "files": "list"}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``spec`` into ``(scheme, argument)``; unknown schemes and missing paths are errors."""
    scheme, sep, arg = str(spec).partition(":")
    scheme = scheme.strip().lower()
    if scheme not in SCHEMES:
        raise UserError(f"dataset spec {spec!r}: unknown scheme {scheme!r}; expected one of "
                        f"{', '.join(SCHEMES)} (e.g. npz:../shared/data/cifar10-1k.npz)")
    if scheme == "digits":
        if arg:
            raise UserError(f"dataset spec {spec!r}: 'digits' takes no path")
    elif not arg:
        raise UserError(f"dataset spec {spec!r}: expected {SCHEMES[scheme]}")
    return scheme, arg


def load_dataset(spec: str, image_size: int | None = None) -> ImageDataset:
    """Load a dataset from a spec string into memory (uint8 NCHW images); never downloads.

    ``image_size`` resizes every image to that square size: for ``folder:`` it is the decode size
    (see ``simxir.data.folder``), for ``digits`` the upsampling size (default 16); for the other
    schemes the loaded images are resized (bilinear, antialiased) when it differs from theirs.
    """
    scheme, arg = parse_spec(spec)
    if image_size is not None and int(image_size) <= 0:
        raise UserError(f"image_size: expected a positive integer, got {image_size}")
    if scheme == "digits":
        return load_digits_dataset(image_size)
    if scheme in FOLDER_SCHEMES:
        return load_folder(arg, image_size, labels=FOLDER_SCHEMES[scheme])
    if scheme in ("cifar10", "cifar100"):
        ds = load_cifar(arg, scheme)
    elif scheme == "svhn":
        ds = load_svhn(arg)
    else:
        ds = load_npz(arg)
    if image_size is not None and int(image_size) != ds.image_size:
        ds = ImageDataset(ds.name, Split(resize_images(ds.train.images, int(image_size)), ds.train.labels),
                          Split(resize_images(ds.test.images, int(image_size)), ds.test.labels), ds.classes)
    return ds


HEADER_SAMPLE = 64


def _typical_side(index) -> int:  # noqa: ANN001 - a FolderIndex
    """The median shorter side of up to HEADER_SAMPLE train images (headers only)."""
    from PIL import Image  # noqa: PLC0415 - start-up time

    sides = []
    for i in sample_indices(len(index.train), HEADER_SAMPLE):
        try:
            with Image.open(index.train.path(int(i))) as im:
                sides.append(min(im.size))
        except Exception:  # noqa: BLE001, S112 - unreadable files are reported when decoded
            continue
    return int(sorted(sides)[len(sides) // 2]) if sides else 224


def open_dataset(spec: str, image_size: int = 0, loader: LoaderConfig | None = None, *,
                 index_cache: str | None = None, device=None,  # noqa: ANN001 - torch.device
                 on_device: bool = False) -> ImageDataset | StreamedDataset:
    """The dataset of ``spec``, in memory or streamed from its files (``loader.stream``; only
    image-file data (``folder:``, ``imagefolder:``, ``images:``, ``files:``) streams). ``image_size``
    0: the stored size in memory, 224 when streamed.

    ``index_cache``: where a folder's (file, label) index is kept between runs (an ``.npz``)."""
    loader = loader or LoaderConfig()
    check_loader(loader)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 0:
        raise UserError(f"image_size: expected 0 (the stored size) or a positive integer, got {image_size!r}")
    scheme, arg = parse_spec(spec)
    if scheme not in FOLDER_SCHEMES:
        if loader.stream == "on":
            raise UserError(f"loader.stream=on: only folder: data can be streamed (and images:, files:); "
                            f"{scheme} data is read into memory (use loader.stream=auto or off)")
        if loader.classes:
            raise UserError(f"loader.classes: a class list selects folders of folder: data, not {scheme}")
        return load_dataset(spec, image_size or None)
    index = folder_index(arg, loader.classes or None, index_cache, labels=FOLDER_SCHEMES[scheme])
    side = image_size or (_typical_side(index) if loader.stream == "auto" else 0)  # only auto weighs it
    stream, reason = should_stream(loader, len(index.train), eval_resize(side) if side else 0, device, on_device)
    log(f"data {spec}: {describe_index(index, scheme)}; "
        f"{'streamed from disk' if stream else 'decoded into memory'} ({reason})")
    if stream:
        return streamed_folder(index, scheme, image_size, loader)
    return load_folder(arg, image_size or None, index=index, name=scheme, skip_unreadable=loader.skip_unreadable)


def describe_index(index, scheme: str) -> str:  # noqa: ANN001 - a FolderIndex
    """What was found, and why it counts as labelled or not (the rule of ``folder:``)."""
    if index.classes:
        return f"{len(index.train)} train / {len(index.test)} val images, {len(index.classes)} classes"
    where = {"files": "listed", "images": "under the folder (images: never reads labels)"}.get(
        scheme, "under the folder, unlabelled: no train/<class>/ + val/<class>/ layout "
                "(imagefolder:DIR requires one, images:DIR ignores one)")
    return f"{len(index.train)} images {where}"


def open_eval_dataset(spec: str, image_size: int, loader: LoaderConfig | None = None, *,
                      index_cache: str | None = None, device=None,  # noqa: ANN001 - torch.device
                      option: str = "--eval-data") -> ImageDataset | StreamedDataset:
    """A labelled dataset for evaluation apart from the training data, at the training crop size
    (``loader``'s streaming settings for image files, no class list); a UserError when ``spec`` has
    no labels."""
    if loader is not None:   # the training data's class list selects nothing here
        streams = parse_spec(spec)[0] in FOLDER_SCHEMES
        loader = dataclasses.replace(loader, classes="", stream=loader.stream if streams else "auto")
    ds = open_dataset(spec, image_size, loader, index_cache=index_cache, device=device)
    if not ds.labelled:
        raise UserError(f"{option} {spec}: has no labels; expected a labelled spec (npz:FILE, cifar10:DIR, "
                        f"or a folder with train/<class>/ and val/<class>/)")
    return ds
