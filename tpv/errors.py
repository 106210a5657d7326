"""The one exception tpv raises for bad input."""


class TPVError(ValueError):
    """Bad input to tpv: the message quotes the offending value and says the fix."""
