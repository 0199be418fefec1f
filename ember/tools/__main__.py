"""python -m ember.tools ...  ==  ember-ir ..."""
import sys

from .cli import main

sys.exit(main())
