"""The API sections, one module per section of the API reference.

Each module holds one class with a ``name``, whether it is ``optional`` (the config's
"endpoints" list turns an optional one on), a constructor taking the daemon's Context,
``section()`` returning its catalogue entry, and optionally ``services()`` for Twisted
services it needs running. Sections never import each other. Registering one is one entry
in REGISTERED.
"""

from .access import Access
from .administration import Administration
from .backup import Backup
from .certs import Certs
from .cluster import Cluster
from .information import Information
from .jobs import Jobs
from .license import License
from .services import Services
from .settings import Settings
from .setup import Setup
from .storage import Storage
from .support import Support
from .updates import Updates

# Access after every section with a download (it makes links to them); Jobs last: it
# serves every kind the sections before it registered.
REGISTERED = (Setup, Information, Services, Updates, Support, Administration, Backup, Settings, Storage, Cluster,
              Certs, License, Access, Jobs)
