"""The pictures: the token grid's geometry (grid.py, which the backends give), the overlays
drawn on frames (overlay.py), what each view shows and says (regions.py), plotly figures
(figures.py), the τ-graph and temporal graph (graphs.py) and the τ scrubber's steps (scrub.py).

Imports nothing, so that ``scissor_viz.pictures.grid`` stays as light as it is: the models
import it without loading plotly.
"""
