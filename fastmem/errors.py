"""The library's own error types: every failure a user can cause is one of these."""


class FastmemError(Exception):
    """Base class: the message is meant to be shown to the user as is."""


class ModelLoadError(FastmemError):
    """A model id, path or file could not be loaded."""


class BindingError(FastmemError):
    """A binding (word, context, label) or a prompt built from it is not usable."""


class LabelError(BindingError):
    """A label is not exactly one token of the model's vocabulary."""


class SettingsError(FastmemError):
    """A read/write setting (alpha, layer, threshold, mode) is out of range."""


class MemoryFileError(FastmemError):
    """A memory file is unreadable, corrupted, of another model or of another format."""


class SuiteError(FastmemError):
    """A suite file is not valid."""


class ResourceError(FastmemError):
    """A request needs more memory than the machine has (the allocator refused); nothing was changed."""
