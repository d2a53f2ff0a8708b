"""Schema revisions, one per `controller.schema` step."""
