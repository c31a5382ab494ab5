"""One module per example of the chapter, its code as the chapter prints
it but for the imports: ``dmr.throttling`` (and its submodules) became
``luathrottle.dmr``. Modules the chapter does not print say so."""
