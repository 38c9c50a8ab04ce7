namespace Xmem.SharedMemory;

/// <summary>
/// Which file a descriptor or a name refers to, as the kernel says (device and inode number): a name "still names" an
/// open segment exactly when the two identities are equal. While this process keeps the segment open its inode number
/// cannot be given to another file, so an equal identity is never a new file that happens to reuse it.
/// </summary>
internal readonly record struct FileIdentity(uint DevMajor, uint DevMinor, ulong Ino);
