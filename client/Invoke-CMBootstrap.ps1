<#
.SYNOPSIS
    Installs the Configuration Manager client from a signed bundle fetched with an Entra ID token.

.DESCRIPTION
    Windows PowerShell 5.1, no modules: .NET Framework 4.6+ only. Steps:
      1. take the access token (-AccessToken) or run -TokenCommand to get one;
      2. GET <api>/bundle?deviceId=..&nonce=<fresh random> with "Authorization: Bearer";
      3. verify the compact JWS: typ cmboot-bundle+jwt, alg RS256, kid in the PINNED JWK set,
         RS256 signature, aud ccmsetup, sub = this device, nonce = the one sent, nbf/exp;
      4. build ccmsetup's arguments from ccmsetup.switches and ccmsetup.properties (never from
         commandLine), each value checked again, and run ccmsetup.exe;
      5. POST status reports to <api>/reports (if Dsregcmd.ps1 is beside this script):
         bundle-received before ccmsetup runs; then installed (with the client version, once the
         ConfigMgr client answers in WMI), installing (ccmsetup is still working, or exit code 7:
         a restart is required) or failed.

    Pinning: the first time, or after the service announced a key rotation, run with
    -RefreshJwks to download <api>/jwks into -JwksPath over HTTPS. Check the file (or ship it
    with your deployment tooling) - afterwards only the pinned keys are trusted.

    Token: the bundle endpoint needs an Entra access token for the server app (AADRESOURCEURI)
    issued to the native client app (AADCLIENTAPPID). Acquire it with your tooling (for
    example MSAL with the device user's account) and pass it as -AccessToken, or pass a
    -TokenCommand script block that prints it. The token is never written to disk or output.

.EXAMPLE
    .\Invoke-CMBootstrap.ps1 -ApiBaseUrl https://contoso-cmboot.azurewebsites.net/api `
        -JwksPath C:\ProgramData\CMBootstrap\jwks.json -RefreshJwks `
        -TokenCommand { & C:\Tools\Get-EntraToken.ps1 } -CcmsetupPath C:\CLIENT\ccmsetup.exe
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $ApiBaseUrl,
    [Parameter(Mandatory = $true)] [string] $JwksPath,
    [string] $AccessToken,
    [scriptblock] $TokenCommand,
    [string] $DeviceId,
    [switch] $RefreshJwks,
    [string] $CcmsetupPath = (Join-Path $PSScriptRoot 'ccmsetup.exe'),
    [switch] $NoRun,
    # ccmsetup.exe hands the install to its service and exits; wait this long for the client.
    [int] $InstallWaitMinutes = 30
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
$ApiBaseUrl = $ApiBaseUrl.TrimEnd('/')
if (-not $ApiBaseUrl.StartsWith('https://', [StringComparison]::OrdinalIgnoreCase)) { throw 'ApiBaseUrl must be an https URL.' }
$AllowedProperties = @('CCMHOSTNAME', 'SMSSiteCode', 'SMSMP', 'AADTENANTID', 'AADTENANTNAME', 'AADCLIENTAPPID', 'AADRESOURCEURI')
$Unsafe = '["\x00-\x1f\x7f%^&|<>!]'
$ClockSkewSeconds = 300

function ConvertFrom-Base64Url([string] $Text) {
    $s = $Text.Replace('-', '+').Replace('_', '/')
    switch ($s.Length % 4) {
        1 { throw 'Invalid base64url text.' }
        2 { $s += '==' }
        3 { $s += '=' }
    }
    return , [Convert]::FromBase64String($s)  # the comma keeps byte[] from being unrolled
}

function ConvertTo-Base64Url([byte[]] $Bytes) {
    return [Convert]::ToBase64String($Bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')
}

function New-WebClient([string] $Token) {
    $client = New-Object System.Net.WebClient
    $client.Encoding = [Text.Encoding]::UTF8
    if ($Token) { $client.Headers.Add('Authorization', "Bearer $Token") }
    return $client
}

function Test-BundleSignature([string[]] $Parts, $Jwk) {
    $parameters = New-Object System.Security.Cryptography.RSAParameters
    $parameters.Modulus = ConvertFrom-Base64Url $Jwk.n
    $parameters.Exponent = ConvertFrom-Base64Url $Jwk.e
    $rsa = New-Object System.Security.Cryptography.RSACryptoServiceProvider
    try {
        $rsa.ImportParameters($parameters)
        $signed = [Text.Encoding]::ASCII.GetBytes($Parts[0] + '.' + $Parts[1])
        return $rsa.VerifyData($signed, 'SHA256', (ConvertFrom-Base64Url $Parts[2]))
    } finally { $rsa.Dispose() }
}

function Get-VerifiedBundle([string] $Jws, $Jwks, [string] $Device, [string] $Nonce) {
    $parts = $Jws.Trim().Split('.')
    if ($parts.Count -ne 3) { throw 'Bundle refused: not a compact JWS.' }
    $header = [Text.Encoding]::UTF8.GetString((ConvertFrom-Base64Url $parts[0])) | ConvertFrom-Json
    if ($header.typ -cne 'cmboot-bundle+jwt') { throw 'Bundle refused: wrong typ.' }
    if ($header.alg -cne 'RS256') { throw 'Bundle refused: alg is not RS256.' }
    $jwk = @($Jwks.keys | Where-Object { $_.kty -ceq 'RSA' -and $_.kid -ceq $header.kid })
    if ($jwk.Count -ne 1) { throw 'Bundle refused: kid is not in the pinned JWK set (use -RefreshJwks after a rotation).' }
    if (-not (Test-BundleSignature $parts $jwk[0])) { throw 'Bundle refused: bad signature.' }
    $claims = [Text.Encoding]::UTF8.GetString((ConvertFrom-Base64Url $parts[1])) | ConvertFrom-Json
    $now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
    if ($claims.aud -cne 'ccmsetup') { throw 'Bundle refused: aud is not ccmsetup.' }
    if ($claims.sub -ne $Device) { throw 'Bundle refused: sub is not this device.' }
    if ($claims.nonce -cne $Nonce) { throw 'Bundle refused: nonce mismatch (replayed bundle?).' }
    if ([long] $claims.exp -lt $now - $ClockSkewSeconds) { throw 'Bundle refused: expired.' }
    if ([long] $claims.nbf -gt $now + $ClockSkewSeconds) { throw 'Bundle refused: not valid yet.' }
    return $claims
}

function Get-CcmsetupArguments($Claims) {
    $arguments = New-Object System.Collections.Generic.List[string]
    foreach ($flag in @($Claims.ccmsetup.switches)) {  # not $switch: an automatic variable
        $flag = [string] $flag
        if ($flag -match $Unsafe) { throw 'Bundle refused: unsafe switch.' }
        if ($flag -cne '/NoCrlCheck' -and -not $flag.StartsWith('/Source:')) { throw "Bundle refused: unknown switch $flag." }
        # Windows argv quoting: a value with spaces is quoted; trailing backslashes are doubled.
        if ($flag.Contains(' ')) { $flag = '"' + ($flag -replace '(\\+)$', '$1$1') + '"' }
        $arguments.Add($flag)
    }
    foreach ($property in $Claims.ccmsetup.properties.PSObject.Properties) {
        if ($AllowedProperties -cnotcontains $property.Name) { throw "Bundle refused: unknown property $($property.Name)." }
        $value = [string] $property.Value
        if (-not $value -or $value -match $Unsafe -or $value.Contains(' ')) { throw "Bundle refused: unsafe value for $($property.Name)." }
        $arguments.Add("$($property.Name)=$value")
    }
    return $arguments.ToArray()
}

function Send-StatusReport([string] $Stage, $ExitCode, $ClientVersion) {
    if (-not $status) { return }
    $report = @{
        reportId         = [guid]::NewGuid().ToString()
        deviceId         = $DeviceId
        tenantId         = $claims.tid
        hostname         = $env:COMPUTERNAME
        stage            = $Stage
        azureAdJoined    = [bool] $status['AzureAdJoined']
        domainJoined     = [bool] $status['DomainJoined']
        ccmsetupExitCode = $ExitCode
        clientVersion    = $ClientVersion
        siteCode         = $claims.ccmsetup.properties.SMSSiteCode
        reportedAt       = [DateTime]::UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture)
        dsregcmd         = $status['Values']  # indexer: .Values is the Hashtable's own property
    }
    $client = New-WebClient $AccessToken
    $client.Headers.Add('Content-Type', 'application/json')
    $null = $client.UploadString("$ApiBaseUrl/reports", 'POST', ($report | ConvertTo-Json -Depth 4 -Compress))
    Write-Output "status reported: $Stage"
}

function Get-ClientVersion {
    # The installed client answers in root\ccm; before that the namespace does not exist.
    $client = Get-WmiObject -Namespace 'root\ccm' -Class 'SMS_Client' -ErrorAction SilentlyContinue
    if ($client) { return [string] $client.ClientVersion }
    return $null
}

# --- main -----------------------------------------------------------------------------------
$dsregcmdScript = Join-Path $PSScriptRoot 'Dsregcmd.ps1'
$status = $null
if (Test-Path $dsregcmdScript) { . $dsregcmdScript; $status = Get-DsregcmdStatus }
if (-not $DeviceId -and $status) { $DeviceId = $status['DeviceId'] }
if (-not $DeviceId) { throw 'No -DeviceId given and dsregcmd shows none.' }
if (-not $AccessToken -and $TokenCommand) { $AccessToken = ([string] (& $TokenCommand)).Trim() }
if (-not $AccessToken) { throw 'Pass -AccessToken or -TokenCommand.' }

$JwksPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($JwksPath)  # .NET needs a full path
if ($RefreshJwks) {
    $jwksText = (New-WebClient $null).DownloadString("$ApiBaseUrl/jwks")
    $null = $jwksText | ConvertFrom-Json  # must parse before it replaces the pinned file
    [IO.File]::WriteAllText($JwksPath, $jwksText)
}
$jwks = [IO.File]::ReadAllText($JwksPath) | ConvertFrom-Json

$nonceBytes = New-Object byte[] 32
$rng = New-Object System.Security.Cryptography.RNGCryptoServiceProvider
$rng.GetBytes($nonceBytes)
$rng.Dispose()
$nonce = ConvertTo-Base64Url $nonceBytes
$query = 'deviceId=' + [Uri]::EscapeDataString($DeviceId) + '&nonce=' + $nonce
$jws = (New-WebClient $AccessToken).DownloadString("$ApiBaseUrl/bundle?$query")
$claims = Get-VerifiedBundle $jws $jwks $DeviceId $nonce
$arguments = Get-CcmsetupArguments $claims
Write-Output ("ccmsetup.exe " + ($arguments -join ' '))
if ($NoRun) { return }

Send-StatusReport 'bundle-received' $null $null

# Start-Process joins -ArgumentList with spaces, hence the quoting above. -Wait would also wait
# for ccmsetup's children; WaitForExit waits for ccmsetup.exe only. Reading Handle first keeps
# ExitCode available after the process ends (a known Windows PowerShell quirk).
$process = Start-Process -FilePath $CcmsetupPath -ArgumentList $arguments -PassThru
$null = $process.Handle
$process.WaitForExit()
$exitCode = $process.ExitCode
Write-Output "ccmsetup.exe exited with $exitCode"

# 0: ccmsetup started its service, which downloads and installs the client (see ccmsetup.log);
# 7: a restart is required first; anything else: ccmsetup failed.
$stage = 'failed'
$clientVersion = $null
if ($exitCode -eq 7) { $stage = 'installing' }
if ($exitCode -eq 0) {
    $stage = 'installing'
    $deadline = [DateTime]::UtcNow.AddMinutes($InstallWaitMinutes)
    while ([DateTime]::UtcNow -lt $deadline) {
        $clientVersion = Get-ClientVersion
        if ($clientVersion) { $stage = 'installed'; break }
        Start-Sleep -Seconds 30  # polling WMI for the new client; bounded by -InstallWaitMinutes
    }
}
Send-StatusReport $stage $exitCode $clientVersion
exit $exitCode
