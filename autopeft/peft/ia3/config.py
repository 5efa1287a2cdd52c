"""IA3 settings for one layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autopeft.peft.roles import Role
from autopeft.peft.spec import MethodSpecBase


class IA3Spec(MethodSpecBase):
    """Learned rescaling vectors (Liu et al., 2022), initialised to one.

    Attention roles (key, value, ...) are scaled on their output; feed-forward down (`ff_down`) is
    scaled on its input, which is the paper's scaling of the feed-forward activation.
    """

    method: Literal["ia3"] = "ia3"
    roles: tuple[Role, ...] = Field(
        default=(Role.KEY, Role.VALUE, Role.FF_DOWN), min_length=1, description="Projections to rescale."
    )
