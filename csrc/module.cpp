// Minimal Python module so `import fastdistilbert._C` loads the shared library (and with it the
// TORCH_LIBRARY registrations). All functionality is exposed as torch ops under torch.ops.fastdistilbert.
#include <Python.h>

static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C", "fastdistilbert C++ extension", -1,
                                     nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&kModule); }
