"""The one base class of the errors a user fixes from the message alone: a changed setting, a damaged checkpoint, a
bad manifest or folder, impossible options, a diverged run. Every recipe's `cli` prints one as a single
`error: <message>` line and exits with status 1, as argparse does with a usage error, instead of a traceback.

Each subclass keeps its builtin base too (`class ManifestError(UserError, ValueError)`), so that code catching a
`ValueError` or an `OSError` still does. The library raises these and never `SystemExit`: only a recipe decides how a
process ends."""


class UserError(Exception):
    """An error whose message says what to change."""


class OptionsError(UserError, ValueError):
    """Options that cannot go together, or that this data or model cannot honour."""
