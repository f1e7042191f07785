"""relapse_risk.serving: scoring households, quarterly in batch and one request at a time.

Two sub-packages, and what both of them use:

- :mod:`.batch`: the quarterly batch job, ``relapse score`` (:mod:`.batch.job`,
  its console in :mod:`.batch.command`), writing the run folder
  (:mod:`.batch.outputs`) and the printable visit lists (:mod:`.batch.visit_lists`).
- :mod:`.api`: the case-management API, a BentoML service (:mod:`.api.service`)
  started by ``relapse serve`` (:mod:`.api.launch`); it scores ``/score``
  requests and answers ``/visit_list`` and ``/household`` from batch runs.
- Shared, so a household gets the same score from either: :mod:`.scoring` (the
  one scoring path), :mod:`.registered_model` (finding and loading a model in
  the registry), :mod:`.village_context` (village figures the batch job writes
  and the API reads), :mod:`.cells` (a scores row's cells read back as Python
  values) and :mod:`.config` (constants).

``api`` and ``batch`` do not import each other: what both need lives here.
"""
