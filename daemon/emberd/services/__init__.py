"""The daemon's services, each with one job, over the domain terms in ``domain``: the
catalog (models, versions, aliases, deletion, adoption), training jobs, serving,
artifacts, batch predictions and job views. The servicers call only these; they in turn
call the engine, the registry and the job manager."""
