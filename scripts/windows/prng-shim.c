/* TEST ONLY, never shipped: a stand-in for bcryptprimitives.dll, which Debian's wine 8.0 lacks.
   Rust >= 1.78's std imports ProcessPrng from it, so under that wine the exe exits with code 53.
   This forwards to RtlGenRandom (advapi32's SystemFunction036). Real Windows 10/11 has the DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
