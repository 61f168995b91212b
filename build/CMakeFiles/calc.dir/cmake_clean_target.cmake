file(REMOVE_RECURSE
  "libcalc.a"
)
