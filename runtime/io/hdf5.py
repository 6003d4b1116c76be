"""The check that an HDF5-based archive keeps its data inside itself (no external raw storage, virtual
datasets or external links), through the HDF5 library netCDF4 already loaded (ctypes)."""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from rrim import files
from rrim.io.paths import ArchiveError, display_name



def _hdf5_offsets(path: Path):
    """Offsets where an HDF5 superblock may start: 0, 512, 1024, 2048, … within the file."""
    size, off = path.stat().st_size, 0
    while off < size:
        yield off
        off = 512 if off == 0 else off * 2


def _is_hdf5(path: Path) -> bool:
    with files.open_regular(path) as f:
        for off in _hdf5_offsets(path):
            f.seek(off)
            if f.read(8) == b"\x89HDF\r\n\x1a\n":
                return True
    return False


@functools.lru_cache(maxsize=1)
def _hdf5():
    """The HDF5 library netCDF4 uses (already loaded in this process), through ctypes; None if not found."""
    import glob
    import netCDF4

    found = []
    try:
        with open("/proc/self/maps") as maps:
            found = [line.split()[-1] for line in maps if "/libhdf5" in line and "hdf5_hl" not in line]
    except OSError:
        pass
    here = Path(netCDF4.__file__).resolve().parent
    for pattern in ("../netcdf4.libs/libhdf5*", ".dylibs/libhdf5*", "../netCDF4.libs/libhdf5*"):
        found += [p for p in glob.glob(str(here / pattern)) if "hdf5_hl" not in p]
    import ctypes.util

    found += [p for p in [ctypes.util.find_library("hdf5")] if p]
    for path in found:
        try:
            lib = ctypes.PyDLL(path)  # PyDLL: calls hold the GIL, as netCDF4's own do
            visit = getattr(lib, "H5Lvisit2", None) or getattr(lib, "H5Lvisit")
        except (OSError, AttributeError):
            continue
        hid, c_int = ctypes.c_int64, ctypes.c_int
        for name, res, args in (("H5open", c_int, []), ("H5Eset_auto2", c_int, [hid, ctypes.c_void_p, ctypes.c_void_p]),
                                ("H5Fopen", hid, [ctypes.c_char_p, ctypes.c_uint, hid]),
                                ("H5Oopen", hid, [hid, ctypes.c_char_p, hid]), ("H5Iget_type", c_int, [hid]),
                                ("H5Dget_create_plist", hid, [hid]), ("H5Pget_layout", c_int, [hid]),
                                ("H5Pget_external_count", c_int, [hid]), ("H5Oclose", c_int, [hid]),
                                ("H5Pclose", c_int, [hid]), ("H5Fclose", c_int, [hid])):
            getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
        callback = ctypes.CFUNCTYPE(c_int, hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
        visit.restype, visit.argtypes = c_int, [hid, c_int, c_int, callback, ctypes.c_void_p]
        lib.H5open()
        lib.H5Eset_auto2(0, None, None)  # no error stacks on stderr (netCDF-C turns them off too)
        return lib, visit, callback
    return None


_H5L_HARD, _H5L_SOFT, _H5I_DATASET, _H5D_VIRTUAL = 0, 1, 5, 3


def check_self_contained(path) -> None:
    """Refuse (:class:`ArchiveError`) an HDF5-based archive that keeps data outside itself: a variable
    with external raw storage or a virtual (mapped) layout, or an external or user-defined link."""
    path = Path(path)
    if not _is_hdf5(path):
        return
    h5 = _hdf5()
    if h5 is None:
        raise ArchiveError(f"{path}: the HDF5 library could not be found to check that the file keeps its data "
                           "inside itself; refusing to read it")
    lib, visit, callback = h5
    fid = lib.H5Fopen(os.fsencode(path), 0, 0)  # read-only, default properties
    if fid < 0:
        raise ArchiveError(f"{path}: not a readable NetCDF file (HDF5 cannot open it)")
    outside = []

    def each(group, name, info, _):
        link_type = ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[0]
        label = display_name(os.fsdecode(name))
        if link_type not in (_H5L_HARD, _H5L_SOFT):
            outside.append(f"{label!r} is a link to another file")
        elif link_type == _H5L_HARD:
            obj = lib.H5Oopen(group, name, 0)
            if obj < 0:
                outside.append(f"{label!r} cannot be opened")
                return 0
            try:
                if lib.H5Iget_type(obj) == _H5I_DATASET:
                    plist = lib.H5Dget_create_plist(obj)
                    if lib.H5Pget_external_count(plist) > 0:
                        outside.append(f"variable {label!r} keeps its data in external files")
                    elif lib.H5Pget_layout(plist) == _H5D_VIRTUAL:
                        outside.append(f"variable {label!r} is a virtual dataset mapping other files")
                    lib.H5Pclose(plist)
            finally:
                lib.H5Oclose(obj)
        return 0

    try:
        status = visit(fid, 0, 2, callback(each), None)  # by name, native order
    finally:
        lib.H5Fclose(fid)
    if outside:
        raise ArchiveError(f"{path}: {'; '.join(outside[:3])}{' …' if len(outside) > 3 else ''}; an archive must "
                           "hold its own data (rrim reads nothing outside the files it is given)")
    if status < 0:
        raise ArchiveError(f"{path}: not a readable NetCDF file (its HDF5 structure cannot be listed)")
