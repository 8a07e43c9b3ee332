from twisted.application.service import ServiceMaker

JidotekiAdmin = ServiceMaker(
    "jidoteki-admin",
    "jidoteki_admin.tap",
    "The appliance Admin API (Jidoteki Admin API v1) over HTTPS.",
    "jidoteki-admin",
)
