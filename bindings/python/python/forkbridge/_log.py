"""Logging helpers and the exception-logging decorators of valkka-multiprocess."""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from typing import Any, Awaitable, Callable, TypeVar

from ._message import MessageObject

_FORMAT = "%(name)s - %(levelname)s - %(message)s"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def format_logger(name: str, level: int | None = logging.INFO) -> logging.Logger:
    """Gives logger ``name`` a stream handler with valkka's format (unless it
    or an ancestor already has a handler) and sets its level (unless
    ``level`` is None)."""
    logger = logging.getLogger(name)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)
    return logger


def exclog(f: F) -> F:
    """Wraps a coroutine method so that an exception is logged (CRITICAL, on
    ``self.logger``, with its traceback) instead of vanishing with its task;
    the call then returns None. ``CancelledError`` passes through."""

    @functools.wraps(f)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await f(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger = getattr(args[0], "logger", logging.getLogger(__name__))
            logger.critical("asyncio call failed with '%s'", e)
            logger.critical(traceback.format_exc())
            return None

    return wrapper  # type: ignore[return-value]


def exclogmsg(f: F) -> F:
    """As :func:`exclog`, and also sends ``MessageObject("error", slot=slot,
    error=str(e))`` to the frontend; the method must be called with a
    ``slot`` keyword."""

    @functools.wraps(f)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        self_ = args[0]
        slot = kwargs["slot"]
        try:
            return await f(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger = getattr(self_, "logger", logging.getLogger(__name__))
            logger.critical("asyncio call failed with '%s'", e)
            logger.critical(traceback.format_exc())
            await self_.send_out__(MessageObject("error", slot=slot, error=str(e)))
            return None

    return wrapper  # type: ignore[return-value]
