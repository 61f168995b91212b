file(REMOVE_RECURSE
  "CMakeFiles/calc.dir/src/lib/alloc.c.o"
  "CMakeFiles/calc.dir/src/lib/alloc.c.o.d"
  "CMakeFiles/calc.dir/src/lib/buf.c.o"
  "CMakeFiles/calc.dir/src/lib/buf.c.o.d"
  "CMakeFiles/calc.dir/src/lib/exc.c.o"
  "CMakeFiles/calc.dir/src/lib/exc.c.o.d"
  "libcalc.a"
  "libcalc.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/calc.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
