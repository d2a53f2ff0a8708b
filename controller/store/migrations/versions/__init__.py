"""Schema revisions, one per `controller.store.schema` step."""
