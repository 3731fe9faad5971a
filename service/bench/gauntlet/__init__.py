"""``billing bench gauntlet``: real processes killed at any moment, then an audit of the books
(``command`` runs it; ``fleet``, ``postgres``, ``clients``, ``faults`` and ``audit`` are its
parts)."""
