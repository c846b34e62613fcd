"""Errors a user can fix, kept apart from bugs so the CLI can treat them differently."""


class UserError(Exception):
    """Bad input a user can fix; the message names the problem and the fix.

    The CLI prints it on one line and exits with code 2.
    """


class ResultError(UserError):
    """A finished computation whose result cannot be used with these options (say, an attack that
    never succeeded): the fix changes the options, so a run directory keeps no partial to resume."""
