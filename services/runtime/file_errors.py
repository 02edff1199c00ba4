"""What a filesystem call's failure means to the caller, when no handler said it closer.

A file or folder of a user's can change under a request (their own shell renames, deletes,
replaces a file by a folder), and some names the protos allow the filesystem refuses (a name of
more than 255 bytes). Each of these is the caller's to fix or retry, never a 500. The messages
are ours: an OSError's own names host paths, which must not reach a user.
"""

from __future__ import annotations

import errno

from services.runtime.errors import (
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)


def file_error(error: BaseException) -> DomainError | None:
    """The domain error an OSError stands for, or None for one that is our own fault."""
    if not isinstance(error, OSError):
        return None
    match error.errno:
        case errno.ENOENT:
            return NotFound(
                "no such file or folder (moved or deleted meanwhile?)", reason="PATH_NOT_FOUND"
            )
        case errno.ENOTDIR:
            return FailedPrecondition(
                "a part of the path is a file, not a folder", reason="NOT_A_FOLDER"
            )
        case errno.EISDIR:
            return FailedPrecondition("the path is a folder, not a file", reason="IS_A_FOLDER")
        case errno.ENAMETOOLONG:
            return InvalidArgument.field("path", "has a name longer than 255 bytes")
        case errno.ELOOP:
            return FailedPrecondition("the path has a link loop", reason="LINK_LOOP")
        case errno.EEXIST | errno.ENOTEMPTY:
            return Conflict("the path changed meanwhile; try again", reason="PATH_CHANGED")
        case errno.ENOSPC | errno.EDQUOT:
            # The server's disk, not the caller's quota (which is checked before writing).
            return Unavailable("the server's disk is full; try again later", reason="DISK_FULL")
    return None
