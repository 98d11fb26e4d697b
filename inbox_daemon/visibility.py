"""Which queue items an agent may see, as one SQL condition every read and change applies.

Items routed to a team named in ``[staff.visibility] by_team`` are seen only by the teams
listed for it, items of a category named in ``by_category`` only by the teams listed for
that; leads and admins see every item. An item one may not see does not exist for one: the
API answers 404 exactly as for an unknown reference, listings and counts leave it out, and
it cannot be claimed, resolved or escalated.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, true
from sqlalchemy.sql.elements import ColumnElement

from .agents import Agent
from .config import VisibilitySettings


@dataclass(frozen=True, slots=True)
class Scope:
    """What one agent may see: every item, or all but the teams and categories hidden."""

    agent: str
    hidden_teams: frozenset[str]
    hidden_categories: frozenset[str]

    @classmethod
    def of(cls, agent: Agent, rules: VisibilitySettings) -> Scope:
        """The scope of ``agent`` under ``rules``."""
        if agent.sees_every_item:
            return cls(agent.name, frozenset(), frozenset())
        return cls(
            agent.name,
            frozenset(team for team, seen_by in rules.by_team.items() if agent.team not in seen_by),
            frozenset(
                category
                for category, seen_by in rules.by_category.items()
                if agent.team not in seen_by
            ),
        )

    def allows(self, team: str, category: str) -> bool:
        """Whether an item of ``team`` and ``category`` is visible."""
        return team not in self.hidden_teams and category not in self.hidden_categories

    def clause(self, team: ColumnElement[str], category: ColumnElement[str]) -> ColumnElement[bool]:
        """The SQL form of :meth:`allows` over the given columns."""
        conditions: list[ColumnElement[bool]] = []
        if self.hidden_teams:
            conditions.append(team.not_in(sorted(self.hidden_teams)))
        if self.hidden_categories:
            conditions.append(category.not_in(sorted(self.hidden_categories)))
        return and_(*conditions) if conditions else true()
