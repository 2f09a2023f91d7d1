"""The one exception type for problems a user can cause (bad file, bad option, bad data)."""


class YoloError(Exception):
    """A user-facing error; its message names the file and the problem in one line.

    The CLI prints it on stderr and exits with status 2.
    """
