"""One base class for the errors a user can cause and fix.

Every error raised at a boundary (a file, a shape, a hook name, a store, a query, an option)
derives from `GraphkitError` and says what is wrong and what to do. The command line prints
its message without a traceback (``graphkit --debug`` prints the traceback too); anything
else that escapes is a bug in graphkit.
"""

from __future__ import annotations


class GraphkitError(Exception):
    """A problem with the user's input or environment, with what to do about it."""
