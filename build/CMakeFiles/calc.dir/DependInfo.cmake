
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/lib/alloc.c" "CMakeFiles/calc.dir/src/lib/alloc.c.o" "gcc" "CMakeFiles/calc.dir/src/lib/alloc.c.o.d"
  "/work/main/src/lib/buf.c" "CMakeFiles/calc.dir/src/lib/buf.c.o" "gcc" "CMakeFiles/calc.dir/src/lib/buf.c.o.d"
  "/work/main/src/lib/exc.c" "CMakeFiles/calc.dir/src/lib/exc.c.o" "gcc" "CMakeFiles/calc.dir/src/lib/exc.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
