namespace OrleansProtocol.Samples;

/// <summary>
/// Echoes every byte back: asyncio's echo server as a grain. Served on 127.0.0.1:7000 by the gateway host.
/// </summary>
/// <remarks>
/// <para>
/// Flow control as asyncio teaches it: when the peer does not take the echo as fast as it sends (the write buffer
/// passes the high-water mark), stop reading; read again once the buffer has drained. The gateway holds input while
/// writing is paused anyway (unless the listener sets <c>ReadWhileWritingPaused</c>); the pattern keeps the protocol
/// right on either setting, and is the one to copy for a protocol that produces output from its input.
/// </para>
/// <para>
/// When the peer half-closes, the connection stays open until everything echoed has been sent, then closes
/// (the default <c>EofReceived</c> returns false: flush, then close).
/// </para>
/// </remarks>
public sealed class EchoGrain : ProtocolGrain
{
    /// <inheritdoc />
    /// <remarks>Echo keeps nothing of its own: its connections move with the grain as they are.</remarks>
    protected override bool Migratable => true;

    /// <inheritdoc />
    /// <remarks>Nothing to keep: a quiet echo connection holds no activation (the sample host's <c>HibernateAfter</c>).</remarks>
    protected override bool Hibernatable => true;

    /// <inheritdoc />
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        // The bytes are this call's own: handed back as they are, without a copy.
        Transport.Write(data, copy: false);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task PauseWriting()
    {
        Transport.PauseReading();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task ResumeWriting()
    {
        Transport.ResumeReading();
        return Task.CompletedTask;
    }
}
