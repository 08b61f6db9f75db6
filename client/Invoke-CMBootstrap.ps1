<#
.SYNOPSIS
    Installs the Configuration Manager client from a signed bundle; the device proves itself with
    its Entra ID device certificate.

.DESCRIPTION
    Windows PowerShell 5.1, no modules: .NET Framework 4.6+ only. Runs as SYSTEM (Intune, GPO
    startup script, task sequence). Steps:
      1. key rotation: GET <api>/jwks/signed; the pinned key set (-JwksPath) is replaced only by a
         set that verifies with a pinned key, is not expired and not older than the pin;
         otherwise the pin stays as it was. Nothing here fetches keys without that check: the
         first pin comes from Save-CMBootstrapPin.ps1 (first setup, thumbprints compared out of
         band) or ships with the deployment;
      2. GET <api>/bundle?deviceId=..&nonce=<fresh random> with the credentials -Auth names:
         device (default): a Device-Proof signed with the key of the Entra ID device certificate
         (Cert:\LocalMachine\My, issuer MS-Organization-Access, subject CN=<deviceId>, TPM or not);
         no user token exists under SYSTEM and none is needed;
         user: "Authorization: Bearer <Entra access token>";
         device+user: both, the proof's ath binding the token;
      3. verify the compact JWS with the pinned keys: typ cmboot-bundle+jwt, alg RS256, kid (a
         pinned key's RFC 7638 thumbprint), signature, aud ccmsetup, sub = this device, nonce =
         the one sent, nbf/exp;
      4. build ccmsetup's arguments from ccmsetup.switches and ccmsetup.properties (never from
         commandLine), each value checked again; check ccmsetup.exe's Authenticode signature
         (Valid, signed by Microsoft Corporation) and keep it open against replacement until it
         has started; run it;
      5. POST status reports to <api>/reports with the same credentials (the proof carries
         bodySha256 of the exact body): bundle-received before ccmsetup runs; then installed
         (with the client version, once the ConfigMgr client answers in WMI), installing
         (ccmsetup is still working, or exit code 7: a restart is required) or failed.

    Token (user modes only): never on this script's command line (other users can read process
    command lines). Either -TokenCommand, a script block that prints it, -TokenCommandPath, a
    program or script that prints it, or the environment variable -TokenVariable names
    (CMBOOTSTRAP_TOKEN by default). It is never written to disk or output, and never sent to a
    redirect: requests do not follow redirects at all.

.EXAMPLE
    # Intune / GPO / task sequence, as SYSTEM, BOOTSTRAP_AUTH=device
    powershell.exe -ExecutionPolicy Bypass -File .\Invoke-CMBootstrap.ps1 `
        -ApiBaseUrl https://contoso-cmboot.azurewebsites.net/api `
        -JwksPath C:\ProgramData\CMBootstrap\pinned-jwks.json -CcmsetupPath C:\CLIENT\ccmsetup.exe
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $ApiBaseUrl,
    [Parameter(Mandatory = $true)] [string] $JwksPath,
    [ValidateSet('device', 'user', 'device+user')] [string] $Auth = 'device',
    [string] $DeviceId,
    [scriptblock] $TokenCommand,
    [string] $TokenCommandPath,
    [string] $TokenVariable = 'CMBOOTSTRAP_TOKEN',
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
. (Join-Path $PSScriptRoot 'CMBootstrap.Device.ps1')
$AllowedProperties = @('CCMHOSTNAME', 'SMSSiteCode', 'SMSMP', 'AADTENANTID', 'AADTENANTNAME', 'AADCLIENTAPPID', 'AADRESOURCEURI',
    # What an install profile may add: README, section Install profiles.
    'SMSCACHESIZE', 'SMSCACHEFLAGS', 'SMSCACHEDIR', 'CCMINSTALLDIR', 'CCMENABLELOGGING', 'CCMLOGLEVEL', 'CCMLOGMAXSIZE', 'CCMLOGMAXHISTORY', 'CCMDEBUGLOGGING', 'CCMEVALINTERVAL', 'CCMEVALHOUR', 'CCMHTTPPORT', 'CCMHTTPSPORT', 'CCMALWAYSINF', 'DISABLESITEOPT', 'DISABLECACHEOPT', 'NOTIFYONLY', 'IGNOREAPPVVERSIONCHECK', 'SITEREASSIGN', 'DNSSUFFIX', 'FSP', 'SMSDIRECTORYLOOKUP', 'SMSCONFIGSOURCE', 'PROVISIONTS')
$Unsafe = '["\x00-\x1f\x7f%^&|<>!]'

function Get-AccessToken {
    $token = $null
    if ($TokenCommand) { $token = [string] (& $TokenCommand) }
    elseif ($TokenCommandPath) { $token = [string] (& $TokenCommandPath) }
    else { $token = [Environment]::GetEnvironmentVariable($TokenVariable) }
    if (-not $token -or -not $token.Trim()) {
        throw "-Auth $Auth needs an access token: -TokenCommand, -TokenCommandPath or the $TokenVariable environment variable."
    }
    return $token.Trim()
}

function Get-VerifiedBundle([string] $Jws, $Pin, [string] $Device, [string] $Nonce) {
    $claims = (Read-VerifiedJws $Jws $BundleType (Get-JwkMap $Pin) 'Bundle').Claims
    $names = Get-JsonNames $claims
    foreach ($name in @('aud', 'sub', 'nonce', 'nbf', 'exp', 'ccmsetup')) {
        if ($names -notcontains $name) { throw "Bundle refused: no $name claim." }
    }
    $now = Get-UnixTime
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
    $report = [ordered] @{
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
    # The proof's bodySha256 covers exactly these bytes, so they are what is sent.
    $body = [Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $report -Depth 4 -Compress))
    $url = "$ApiBaseUrl/reports"
    $headers = Get-AuthHeaders -Auth $Auth -Certificate $certificate -DeviceId $DeviceId -Token $token -Method 'POST' -Url $url -Nonce '' -Body $body
    $null = Invoke-BootstrapRequest 'POST' $url $headers $body 'application/json'
    Write-Output "status reported: $Stage"
}

# Valid Authenticode signature by Microsoft Corporation, checked on the file this script holds
# open (FileShare.Read: nobody can replace or rename it until ccmsetup has started).
function Assert-MicrosoftSigned([string] $Path) {
    $signature = Get-AuthenticodeSignature -FilePath $Path
    if ($signature.Status -ne [Management.Automation.SignatureStatus]::Valid) {
        throw "ccmsetup.exe refused: its Authenticode signature is $($signature.Status) ($($signature.StatusMessage))."
    }
    $signer = $signature.SignerCertificate
    $simple = [Security.Cryptography.X509Certificates.X509NameType]::SimpleName
    if (-not $signer -or $signer.GetNameInfo($simple, $false) -cne 'Microsoft Corporation' -or $signer.Subject -cnotmatch '(^|,\s*)O=Microsoft Corporation(,|$)') {
        throw 'ccmsetup.exe refused: not signed by Microsoft Corporation.'
    }
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
$DeviceId = ([guid] $DeviceId).ToString()  # the canonical lower-case form the proof carries
$certificate = $null
if ($Auth -ne 'user') { $certificate = Find-DeviceCertificate $DeviceId }
$token = $null
if ($Auth -ne 'device') { $token = Get-AccessToken }

$JwksPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($JwksPath)  # .NET needs a full path
$pin = Update-PinnedJwks $ApiBaseUrl $JwksPath

$nonceBytes = New-Object byte[] 32
$rng = New-Object System.Security.Cryptography.RNGCryptoServiceProvider
$rng.GetBytes($nonceBytes)
$rng.Dispose()
$nonce = ConvertTo-Base64Url $nonceBytes
$bundleUrl = "$ApiBaseUrl/bundle"
$headers = Get-AuthHeaders -Auth $Auth -Certificate $certificate -DeviceId $DeviceId -Token $token -Method 'GET' -Url $bundleUrl -Nonce $nonce -Body $null
$query = 'deviceId=' + [Uri]::EscapeDataString($DeviceId) + '&nonce=' + $nonce
$jws = Invoke-BootstrapRequest 'GET' "$bundleUrl`?$query" $headers $null 'application/jose'
$claims = Get-VerifiedBundle $jws $pin $DeviceId $nonce
$arguments = Get-CcmsetupArguments $claims
Write-Output ("ccmsetup.exe " + ($arguments -join ' '))
if ($NoRun) { return }

$CcmsetupPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($CcmsetupPath)
$held = [IO.File]::Open($CcmsetupPath, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::Read)
try {
    Assert-MicrosoftSigned $CcmsetupPath
    Send-StatusReport 'bundle-received' $null $null
    # Start-Process joins -ArgumentList with spaces, hence the quoting above. -Wait would also
    # wait for ccmsetup's children; WaitForExit waits for ccmsetup.exe only. Reading Handle first
    # keeps ExitCode available after the process ends (a known Windows PowerShell quirk).
    $process = Start-Process -FilePath $CcmsetupPath -ArgumentList $arguments -PassThru
} finally { $held.Dispose() }  # once started, the image is mapped and cannot be changed
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
