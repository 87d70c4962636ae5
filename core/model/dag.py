"""Graph algorithms on step dependencies (key -> keys it depends on)."""

from __future__ import annotations


def find_cycle(depends_on: dict[str, list[str]]) -> list[str] | None:
    """Return one dependency cycle as ``[a, b, c, a]`` (a depends on b ...), or None.

    Iterative depth-first search, so a 10,000-step chain does not hit the
    recursion limit.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(depends_on, WHITE)
    for root in depends_on:
        if colour[root] != WHITE:
            continue
        path: list[str] = [root]
        iters = [iter(depends_on.get(root, ()))]
        colour[root] = GREY
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iters.pop()
                continue
            state = colour.get(nxt, BLACK)
            if state == GREY:
                return [*path[path.index(nxt) :], nxt]
            if state == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iters.append(iter(depends_on.get(nxt, ())))
    return None


def ancestors(depends_on: dict[str, list[str]], key: str) -> set[str]:
    """Every step ``key`` depends on, directly or not."""
    seen: set[str] = set()
    stack = list(depends_on.get(key, ()))
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(depends_on.get(dep, ()))
    return seen
