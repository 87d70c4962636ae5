"""Full screens: the runs list and one run. They never import each other; they post messages the app answers."""
