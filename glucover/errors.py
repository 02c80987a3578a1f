"""Errors a user can cause. The CLI prints their message (which says what to do) and exits 2;
anything else is our bug and gets a stack trace."""


class UserError(ValueError):
    pass
