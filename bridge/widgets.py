"""Notebook widgets on the SDK (ipywidgets only, no front-end build):

    from bridge.widgets import ChatWidget, ModelsWidget, StatusWidget, ConnectWidget
    ChatWidget(base_url="http://127.0.0.1:5000", username="alice", password="...")

Each takes ``client=`` (a ``bridge.Client``) or the Client's own arguments, shows every
error on its own error line, and does its network work in background threads.
"""

from __future__ import annotations

from bridge.widgets_base import BaseWidget, describe_error
from bridge.widgets_chat import ChatWidget
from bridge.widgets_connect import ConnectWidget
from bridge.widgets_models import ModelsWidget
from bridge.widgets_status import StatusWidget

__all__ = ["BaseWidget", "ChatWidget", "ConnectWidget", "ModelsWidget", "StatusWidget",
           "describe_error"]
