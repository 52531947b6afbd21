namespace OrleansProtocol;

/// <summary>asyncio's default write-buffer watermarks, which the gateway and a protocol's transport both start from.</summary>
public static class WriteBufferDefaults
{
    /// <summary>asyncio's default high-water mark for the write buffer: 64 KiB.</summary>
    public const int High = 64 * 1024;

    /// <summary>asyncio's default low-water mark for the write buffer: a quarter of the high-water mark, 16 KiB.</summary>
    public const int Low = High / 4;
}
