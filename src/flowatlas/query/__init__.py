"""The query layer: the filter language, the query model, and time windows."""
