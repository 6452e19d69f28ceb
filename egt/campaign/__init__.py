"""The reproduction campaign (docs/reproduction/protocol.md), beside the framework rather than in it:
:mod:`~egt.campaign.reproduce` plans and runs the protocol's sweeps (``python -m egt.reproduce``),
:mod:`~egt.campaign.paired` pairs their cells over seeds and items, :mod:`~egt.campaign.power` gives the
t statistics and detectable differences (``python -m egt.campaign.power``), :mod:`~egt.campaign.verdict`
applies the protocol's rules, and :mod:`~egt.campaign.reproduction` writes the reproduction's pages."""
