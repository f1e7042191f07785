"""The workbench: visit lists, household pages and visit outcomes for county and township staff.

`relapse web` serves it (:mod:`.app`); `relapse outcomes import` fills its
database from scoring runs (:mod:`.importer`); `relapse users` and `relapse
outcomes export` administer it (:mod:`.command`). docs/workbench.md describes it.
"""
