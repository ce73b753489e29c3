"""sipdata: the routing data service behind a Kamailio SIP edge."""

__version__ = "0.1.0"
