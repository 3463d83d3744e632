"""`masnn bench`: speed and memory targets measured (ingestion, LIF and inference, the live pipeline), never
asserted in tests. Imports everything else of masnn; nothing imports this but the CLI and test fixtures."""
