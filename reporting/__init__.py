"""The run's summary and HTML report, read from the run's artifacts; ReportGen makes them a step."""
