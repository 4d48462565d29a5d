"""Exceptions the command line turns into messages (kept free of heavy imports)."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the stage, epoch, step and loss term."""
