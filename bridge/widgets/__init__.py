"""Notebook widgets on the SDK (ipywidgets only, no front-end build):

    from bridge.widgets import ChatWidget, ModelsWidget, StatusWidget, ConnectWidget
    ChatWidget(base_url="http://127.0.0.1:5000", username="alice", password="...")

Each takes ``client=`` (a ``bridge.Client``) or the Client's own arguments, shows every
error on its own error line, and does its network work in background threads.
"""

from __future__ import annotations

from bridge.widgets.base import BaseWidget, describe_error
from bridge.widgets.chat import ChatWidget
from bridge.widgets.connect import ConnectWidget
from bridge.widgets.models import ModelsWidget
from bridge.widgets.status import StatusWidget

__all__ = ["BaseWidget", "ChatWidget", "ConnectWidget", "ModelsWidget", "StatusWidget",
           "describe_error"]
