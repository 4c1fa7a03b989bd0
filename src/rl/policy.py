"""The junction-shared phase_select policy: PPO's actor-critic with the phase slots a junction
lacks masked out.

A shared policy has one action per phase slot (`phase_slots`, the same on every map so a model
transfers); a junction with fewer phases than slots would otherwise give the missing slots
probability, and each of them means "keep the current green". On a 3-phase junction under 8
slots that is 5 of 8 actions at the start of training, and argmax over five aliased "keep"
logits holds greens the sampled policy would leave (measured on RESCO's ingolstadt1). Here the
missing slots' logits are set to a large negative number, read per row from the observation's
slot flags (`slot_exists_columns`), which observation normalisation leaves raw for this
(`wrap_normalized(raw_columns=...)`): the same network serves 2- to 8-phase junctions, in
training, evaluation and zero-shot on another map.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy

#: Logit given to a phase slot the junction does not have (probability ~0, finite gradients).
MASKED_LOGIT = -1e8


class SlotMaskedPolicy(ActorCriticPolicy):
    """`MlpPolicy` whose categorical action skips the slots flagged absent in the observation
    (`slot_columns`: [start, stop) of the flags, one per action)."""

    def __init__(self, *args: Any, slot_columns: Sequence[int], **kwargs: Any) -> None:
        self.slot_columns: Tuple[int, int] = (int(slot_columns[0]), int(slot_columns[1]))
        self._slot_mask: Optional[th.Tensor] = None
        super().__init__(*args, **kwargs)
        if not isinstance(self.action_dist, CategoricalDistribution):
            raise ValueError("SlotMaskedPolicy needs a Discrete action space (one action per phase slot)")
        if self.slot_columns[1] - self.slot_columns[0] != int(self.action_space.n):
            raise ValueError(f"slot_columns {self.slot_columns} do not match {self.action_space.n} actions")

    def _get_constructor_parameters(self) -> Dict[str, Any]:
        return {**super()._get_constructor_parameters(), "slot_columns": self.slot_columns}

    def _remember_slots(self, obs: th.Tensor) -> None:
        """Flags of this batch, for the distribution built next (every SB3 path that builds one
        passes through `forward`, `evaluate_actions` or `get_distribution` with the batch)."""
        flags = obs[..., self.slot_columns[0]:self.slot_columns[1]] > 0.5
        self._slot_mask = flags | ~flags.any(dim=-1, keepdim=True)  # a row without flags: no mask

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        logits = self.action_net(latent_pi)
        if self._slot_mask is not None:
            logits = logits.masked_fill(~self._slot_mask, MASKED_LOGIT)
        return self.action_dist.proba_distribution(action_logits=logits)

    def forward(self, obs: th.Tensor, deterministic: bool = False):
        self._remember_slots(obs)
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor):
        self._remember_slots(obs)
        return super().evaluate_actions(obs, actions)

    def get_distribution(self, obs: th.Tensor) -> Distribution:
        self._remember_slots(obs)
        return super().get_distribution(obs)
